import sys

from rezolus_sampler.cli import main

sys.exit(main())
