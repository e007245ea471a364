import sys

from minillm.book.cli import main

sys.exit(main())
