"""ComfyUI containers that ComfyWeb makes itself (issue #13): Docker hosts, container
pools, the containers placed on them, and the one module that talks to Docker."""
