"""Every writer of what people read: report.md/html, summary.json, frontier.csv, charts, monitor and diff reports."""
