"""Reader studies, without Qt or torch: the study log (``log``), its export (``export``), the protocol and its
counterbalanced plan (``protocol``, ``plan``), the analysis and report (``analysis``, ``report``), and the
iMRMC export (``imrmc``). The participant's screen (``sonolens study run``) is the viewer's (``app.study_run``)."""
