"""The one exception type for bad user input: it names the file, the place and what was expected."""


class UserError(Exception):
    """Shown to the user as one line, exit code 2; a traceback only with --debug."""
