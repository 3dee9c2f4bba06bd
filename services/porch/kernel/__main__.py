import sys

from porch.kernel.service import main

sys.exit(main())
