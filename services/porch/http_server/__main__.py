import sys

from porch.http_server.service import main

sys.exit(main())
