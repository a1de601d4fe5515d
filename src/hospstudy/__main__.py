"""`python -m hospstudy` is the `hospstudy` command."""

from hospstudy.cli import main

main()
