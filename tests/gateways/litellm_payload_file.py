"""Loaded by the LiteLLM proxy from its config (`litellm_settings.callbacks:
litellm_payload_file.payload_file`): appends each call's `StandardLoggingPayload` (success and
failure) as one JSON line to the file named by $PAYLOAD_LOG, serialized by LiteLLM's own
`safe_dumps` (what its S3, GCS and generic-API loggers send). LiteLLM has no built-in logger that
writes the payload to a local file; this is its documented custom-callback path."""

import os

from litellm.integrations.custom_logger import CustomLogger
from litellm.litellm_core_utils.safe_json_dumps import safe_dumps


class PayloadFile(CustomLogger):
    def _write(self, kwargs: dict) -> None:
        payload = kwargs.get("standard_logging_object")
        if payload is not None:
            with open(os.environ["PAYLOAD_LOG"], "a", encoding="utf-8") as f:
                f.write(safe_dumps(payload) + "\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)


payload_file = PayloadFile()
