import sys

from porch.http_client.service import main

sys.exit(main())
