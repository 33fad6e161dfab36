import sys

from m3stripe.cli import main

sys.exit(main())
