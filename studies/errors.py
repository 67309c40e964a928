"""Exceptions that the command line turns into a message and exit code 2."""


class StudyInputError(Exception):
    """Invalid input from a researcher or participant.

    The message names the invalid value and says how to fix it; the command line
    prints it without a traceback and exits with code 2.
    """
