"""Views of the tasks app, one module per area (submitting, tasks, gallery, queue controls)."""
