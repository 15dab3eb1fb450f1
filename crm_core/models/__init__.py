"""The CRM core's tables (SQLAlchemy 2 typed mappings), one module per aggregate; the
migrations mirror them. Importing this package registers every table on `Base.metadata`
(Alembic's env.py relies on it), and the names below are the package's public surface."""

from crm_core.models.activities import (
    Activity,
    ActivityCard,
    ActivityContact,
    ActivityUser,
    Comment,
    HistoryEntry,
)
from crm_core.models.cards import (
    ArchiveAddress,
    Card,
    CardContact,
    CardUnread,
    Contact,
    ContactEmail,
    ContactPhone,
    EntityType,
)
from crm_core.models.common import KEY_LENGTH, UTCDateTime, dedupe_key, utcnow
from crm_core.models.documents import Blob, Document
from crm_core.models.inbound import (
    ChatMessage,
    InboundItem,
    InboundStatus,
    Mailbox,
    Payment,
    Source,
)
from crm_core.models.settings import CompanySetting
from crm_core.models.users import (
    ApiToken,
    Department,
    EndedWebSession,
    Role,
    User,
    UserCounter,
    UserRole,
)

__all__ = [
    "KEY_LENGTH",
    "Activity",
    "ActivityCard",
    "ActivityContact",
    "ActivityUser",
    "ApiToken",
    "ArchiveAddress",
    "Blob",
    "Card",
    "CardContact",
    "CardUnread",
    "ChatMessage",
    "Comment",
    "CompanySetting",
    "Contact",
    "ContactEmail",
    "ContactPhone",
    "Department",
    "Document",
    "EndedWebSession",
    "EntityType",
    "HistoryEntry",
    "InboundItem",
    "InboundStatus",
    "Mailbox",
    "Payment",
    "Role",
    "Source",
    "UTCDateTime",
    "User",
    "UserCounter",
    "UserRole",
    "dedupe_key",
    "utcnow",
]
