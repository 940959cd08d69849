"""``rvec`` without installing the package (the GPU machine gets the source tree, not a wheel)."""

import sys

from rvec.cli import main

sys.argv[0] = "rvec"
sys.exit(main())
