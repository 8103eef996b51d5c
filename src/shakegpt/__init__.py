"""shakegpt: the "build a GPT from scratch" lecture as a training lab on Tiny Shakespeare."""

import sys

# `python -m shakegpt.<command>` imports this package first, while sys.argv[0] is "-m" (as the
# interpreter documents): from here Ctrl-C during the command's imports (torch and Lightning take
# seconds) is one line. Each command's __main__ block says when its imports are done.
if sys.argv[:1] == ["-m"]:
    from shakegpt.common.errors import exit_quietly_on_ctrl_c

    exit_quietly_on_ctrl_c()
