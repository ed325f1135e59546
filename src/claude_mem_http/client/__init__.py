"""What runs beside the agent: the typed HTTP client (:mod:`.http_client`, with the
bodies it sends and returns in :mod:`.shapes` and its errors in :mod:`.errors`), the local and
remote backends (:mod:`.backends`), the Claude Code hooks (:mod:`.hooks`, with the
hook-to-event mapping in :mod:`.hook_mapping` and the spool of undelivered records in
:mod:`.spool`), the installer (:mod:`.install`) and transcript import
(:mod:`.transcript_import`)."""
