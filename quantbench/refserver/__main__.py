"""``python -m quantbench.refserver [flags]``, or ``... serve MODEL [vllm serve flags]``."""

import sys

from quantbench.refserver.cli import main, vllm_cli

if sys.argv[1:2] == ["serve"]:
    vllm_cli(sys.argv[2:])
else:
    main()
