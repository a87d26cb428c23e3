"""What each ``roadseg`` command does, one module per command group, given a :class:`~roadseg.session.Session`
(names, clients) and a :class:`~roadseg.output.Printer`.

The Click layer (``roadseg/cli.py``) parses arguments and maps exceptions to exit codes; the functions here
fetch from AWS, decide, act and print, and raise ``UserError`` / ``JobFailed`` rather than exiting. ``cli.py``
imports each module inside the command that uses it, so that ``roadseg --help`` starts fast.
"""
