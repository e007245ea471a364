import sys

from minillm.book.notebooks import main

sys.exit(main())
