"""Files on cards (mail attachments) and their content, stored once per SHA-256."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base
from crm_core.models.common import UTCDateTime, utcnow


class Blob(Base):
    """File content, stored once per SHA-256 whatever how many documents share it."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Document(Base):
    """A file on a card (an attachment of a mail so far). Inline images of a mail's HTML are
    kept the same way but flagged `inline` and not listed among the card's documents."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"), index=True)
    history_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("history_entries.id", ondelete="SET NULL"), default=None, index=True
    )
    file_name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
