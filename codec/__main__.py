"""python -m codec: the talkcodec command line."""

import sys

from codec.cli import main

sys.exit(main())
