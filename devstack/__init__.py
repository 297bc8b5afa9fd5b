"""A development stack that is a real homeserver: a small OAuth 2.0 server (Authlib) in front of a real
Synapse in MAS mode, plus this project's rendezvous server. Development and tests only.

``python -m devstack up`` runs it; ``with DevStack.start() as stack:`` (or ``async with``) embeds it.
"""

from devstack._process import StartupError
from devstack.oauth import ApprovalError, DeviceTokens, InvalidUser, ProvisioningError
from devstack.stack import DevStack

__all__ = ["ApprovalError", "DevStack", "DeviceTokens", "InvalidUser", "ProvisioningError", "StartupError"]
