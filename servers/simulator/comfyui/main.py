"""A stand-in ComfyUI install for trying local instances without a GPU.

Point a local instance's ComfyUI directory here (and its Python at the project's
virtualenv) and the launcher runs it exactly as it runs ComfyUI's own main.py:
`python main.py --listen 127.0.0.1 --port P --extra-model-paths-config F [args]`.
It serves the simulator on those flags, so the models library's files show up in
its model lists; extra arguments such as `--time-scale 0.2` go to the simulator.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))

from servers.simulator.runner import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
