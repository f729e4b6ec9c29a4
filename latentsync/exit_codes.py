"""The command line's exit codes (also listed in ``latentsync --help``)."""

EXIT_OK = 0
EXIT_ERROR = 1  # anything unexpected
EXIT_USAGE = 2  # bad arguments, checked before anything loads
EXIT_MODELS = 3  # model files missing or unusable
EXIT_INPUT = 4  # an input could not be used
EXIT_BATCH = 5  # a batch finished with failed jobs
EXIT_NO_FACE = 6  # no usable face and --require-face
EXIT_INTERRUPTED = 130  # Ctrl-C; a signal gives 128 + its number (SIGTERM: 143)
