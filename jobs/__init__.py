"""The generation service: job rows and quotas (store), running jobs (runner), the queues that
carry them (queues), the HTTP routes under /v1/generations (api) and their metrics."""
