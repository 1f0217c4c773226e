#!/usr/bin/env bash
# Stop the Ray processes of this machine (head or worker).
exec ray stop "$@"
