"""``python -m echocare`` (and ``accelerate launch -m echocare``) entry point."""

import sys

from echocare.cli import main

if __name__ == "__main__":
    sys.exit(main())
