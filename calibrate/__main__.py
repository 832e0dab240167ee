"""`python -m calibrate` runs the command line."""

from calibrate.cli.app import main

main()
