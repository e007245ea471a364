"""`python -m minillm.tinyworld`: regenerate the TinyWorld release (see ``main``)."""
import sys

from minillm.tinyworld import main

sys.exit(main())
