"""Reader studies, without Qt or torch.

``protocol`` (the study's YAML file) → ``plan`` (counterbalanced readings) → ``worklist`` (the files of a plan) →
the participant's screen (``app.study_run``, which writes the study ``log`` and reads its ``progress``) →
``readings`` (plan ⋈ logs) → ``analysis`` (statistics) → ``report`` and ``report_html`` (tables, plots, page) and
``imrmc`` (the MRMC export). ``questionnaires`` holds NASA-TLX and SUS; ``export`` is ``sonolens study export``
for any study log; ``cli`` is ``sonolens study``.
"""
