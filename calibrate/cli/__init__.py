"""The command line: the Typer app, the error boundary, one module per command group, the console."""
