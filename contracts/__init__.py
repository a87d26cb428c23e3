"""Facts that cross a boundary (stack <-> Lambda, stack <-> operator, pipeline <-> registry), each written once.

Standard library only and importing nothing from the project: the package ships inside the Lambda bundle and
the processing code zip, next to the code that reads these facts.
"""
