"""AWS CDK app of the OCS GE platform (see infra/README.md). Imports nothing of ours at import time."""

import os

# jsii prints a full-screen banner on Node releases past its support date (Node 20 here); the app
# works the same. Operators on a supported Node never see this setting matter.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
