"""The seeded generator of sample_logs/ and the benchmark logs; not part of the runtime layers."""
