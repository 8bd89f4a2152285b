"""`python -m modelserve.cli`, as the tests and the bench scripts start a server."""

from modelserve.cli import main

main()
