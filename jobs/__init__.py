"""The one entry script of every SageMaker Processing step (processing_entry.py): shipped alone, standard library
only, it unpacks the job packages and runs the step's module."""
