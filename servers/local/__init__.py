"""Local ComfyUI installs that ComfyWeb launches itself (issue #14, product item L1).

`LocalInstance` (configuration and what the launcher saw) in `models.py`; the one
process that owns the ComfyUI children, `manage.py launcher`, in `launcher.py`;
what web and the API may ask of it in `control.py`; the console in `console.py`.
"""
