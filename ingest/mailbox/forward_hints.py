"""Hints for forward detection: header labels, separator phrases and subject prefixes that
mail clients write, by language. `forwarding` reads blocks by their shape; these only rank
candidates and name a block's language for its date. No case depends on being listed here.
"""

from __future__ import annotations

# Header labels of forwarded blocks, by language and field (lower case). Sources: the
# clients' own localised strings as users paste them (Outlook "From/Sent/To/Cc/Subject",
# Thunderbird's mime.properties, Gmail's and Apple Mail's forward headers).
LABELS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "from": ("from",),
        "date": ("sent", "date"),
        "to": ("to",),
        "cc": ("cc",),
        "subject": ("subject",),
        "reply-to": ("reply-to", "reply to"),
    },
    "fr": {
        "from": ("de",),
        "date": ("envoyé", "envoyé le", "date"),
        "to": ("à", "pour"),
        "cc": ("cc", "copie", "copie à"),
        "subject": ("objet", "sujet"),
        "reply-to": ("répondre à",),
    },
    "de": {
        "from": ("von",),
        "date": ("gesendet", "datum"),
        "to": ("an",),
        "cc": ("cc", "kopie", "kopie (cc)", "cc (kopie)"),
        "subject": ("betreff",),
        "reply-to": ("antwort an",),
    },
    "es": {
        "from": ("de",),
        "date": ("enviado", "enviado el", "fecha"),
        "to": ("para",),
        "cc": ("cc", "copia"),
        "subject": ("asunto",),
        "reply-to": ("responder a",),
    },
    "pt": {
        "from": ("de", "remetente"),
        "date": ("enviado", "enviada", "data", "enviado em"),
        "to": ("para",),
        "cc": ("cc", "cópia", "cópia (cc)"),
        "subject": ("assunto",),
        "reply-to": ("responder a",),
    },
    "it": {
        "from": ("da", "mittente"),
        "date": ("inviato", "data"),
        "to": ("a",),
        "cc": ("cc", "copia"),
        "subject": ("oggetto",),
        "reply-to": ("rispondi a",),
    },
    "ro": {
        "from": ("de la", "expeditorul", "expeditor"),
        "date": ("trimis", "dată", "data"),
        "to": ("către", "destinatarul", "destinatar", "catre"),
        "cc": ("cc",),
        "subject": ("subiect", "subiectul"),
    },
    "nl": {
        "from": ("van",),
        "date": ("verzonden", "datum"),
        "to": ("aan",),
        "cc": ("cc",),
        "subject": ("onderwerp",),
        "reply-to": ("antwoord aan",),
    },
    "sv": {
        "from": ("från", "avsändare"),
        "date": ("skickat", "skickat den", "datum"),
        "to": ("till", "mottagare"),
        "cc": ("kopia", "cc"),
        "subject": ("ämne",),
    },
    "da": {
        "from": ("fra", "afsender"),
        "date": ("sendt", "sendt den", "dato"),
        "to": ("til",),
        "cc": ("cc", "kopi"),
        "subject": ("emne",),
    },
    "nb": {
        "from": ("fra", "avsender"),
        "date": ("sendt", "dato"),
        "to": ("til",),
        "cc": ("kopi", "cc"),
        "subject": ("emne",),
    },
    "is": {
        "from": ("frá",),
        "date": ("sent", "dagsetning"),
        "to": ("til",),
        "cc": ("afrit",),
        "subject": ("efni",),
    },
    "fi": {
        "from": ("lähettäjä",),
        "date": ("lähetetty", "päivämäärä"),
        "to": ("vastaanottaja",),
        "cc": ("kopio",),
        "subject": ("aihe",),
    },
    "et": {
        "from": ("saatja",),
        "date": ("saadetud", "kuupäev"),
        "to": ("adressaat", "kellele"),
        "cc": ("koopia",),
        "subject": ("teema",),
    },
    "hu": {
        "from": ("feladó",),
        "date": ("elküldve", "küldve", "dátum"),
        "to": ("címzett",),
        "cc": ("másolat", "másolatot kap"),
        "subject": ("tárgy",),
    },
    "pl": {
        "from": ("od", "nadawca"),
        "date": ("wysłano", "data"),
        "to": ("do",),
        "cc": ("dw", "kopia"),
        "subject": ("temat",),
    },
    "cs": {
        "from": ("od", "odesílatel"),
        "date": ("odesláno", "datum"),
        "to": ("komu",),
        "cc": ("kopie",),
        "subject": ("předmět",),
    },
    "sk": {
        "from": ("od", "odosielateľ"),
        "date": ("odoslané", "dátum"),
        "to": ("komu",),
        "cc": ("kópia",),
        "subject": ("predmet",),
    },
    "hr": {
        "from": ("od", "šalje", "pošiljatelj"),
        "date": ("poslano", "datum"),
        "to": ("prima", "za"),
        "cc": ("kopija",),
        "subject": ("predmet",),
    },
    "sl": {"from": ("od",), "date": ("poslano", "datum"), "to": ("za",), "subject": ("zadeva",)},
    "sr": {"from": ("od",), "date": ("poslato", "datum"), "to": ("za",), "subject": ("tema",)},
    "lt": {
        "from": ("nuo", "siuntėjas"),
        "date": ("išsiųsta", "data"),
        "to": ("kam",),
        "cc": ("kopija",),
        "subject": ("tema",),
    },
    "lv": {
        "from": ("no", "sūtītājs"),
        "date": ("nosūtīts", "datums"),
        "to": ("kam",),
        "cc": ("kopija",),
        "subject": ("tēma",),
    },
    "tr": {
        "from": ("kimden", "gönderen"),
        "date": ("gönderildi", "tarih", "gönderilme tarihi"),
        "to": ("kime", "alıcı"),
        "cc": ("bilgi",),
        "subject": ("konu",),
    },
    "el": {
        "from": ("από",),
        "date": ("στάλθηκε", "ημερομηνία"),
        "to": ("προς",),
        "cc": ("κοιν",),
        "subject": ("θέμα",),
    },
    "ru": {
        "from": ("от", "отправитель"),
        "date": ("отправлено", "дата"),
        "to": ("кому",),
        "cc": ("копия",),
        "subject": ("тема",),
    },
    "uk": {
        "from": ("від", "від кого"),
        "date": ("надіслано", "дата"),
        "to": ("кому",),
        "cc": ("копія",),
        "subject": ("тема",),
    },
    "bg": {
        "from": ("от",),
        "date": ("изпратено", "дата"),
        "to": ("до",),
        "cc": ("копие",),
        "subject": ("тема",),
    },
    "he": {
        "from": ("מאת",),
        "date": ("נשלח", "תאריך"),
        "to": ("אל",),
        "cc": ("עותק",),
        "subject": ("נושא",),
    },
    "ar": {
        "from": ("من",),
        "date": ("تاريخ الإرسال", "التاريخ", "أرسلت"),
        "to": ("إلى",),
        "cc": ("نسخة",),
        "subject": ("الموضوع",),
    },
    "ja": {
        "from": ("差出人", "送信者"),
        "date": ("送信日時", "日付"),
        "to": ("宛先",),
        "cc": ("cc",),
        "subject": ("件名",),
    },
    "zh": {
        "from": ("发件人", "寄件者", "發件人"),
        "date": ("发送时间", "寄件日期", "日期", "時間"),
        "to": ("收件人", "收件者"),
        "cc": ("抄送", "副本"),
        "subject": ("主题", "主旨"),
    },
    "ko": {
        "from": ("보낸 사람",),
        "date": ("보낸 날짜", "날짜"),
        "to": ("받는 사람",),
        "cc": ("참조",),
        "subject": ("제목",),
    },
}

# label -> field, and label -> languages that use it.
LABEL_FIELD: dict[str, str] = {}
LABEL_LANGUAGES: dict[str, tuple[str, ...]] = {}
for _language, _fields in LABELS.items():
    for _field, _labels in _fields.items():
        for _label in _labels:
            LABEL_FIELD.setdefault(_label, _field)
            LABEL_LANGUAGES[_label] = (*LABEL_LANGUAGES.get(_label, ()), _language)

# Separator phrases ("---------- Forwarded message ----------", "Begin forwarded message:"):
# a dashed line is a separator whatever its words; these also mark an undashed line.
FORWARD_PHRASES = (
    "forwarded message",
    "original message",
    "begin forwarded message",
    "message transféré",
    "message transmis",
    "message d'origine",
    "début du message réexpédié",
    "début du message transféré",
    "weitergeleitete nachricht",
    "ursprüngliche nachricht",
    "anfang der weitergeleiteten nachricht",
    "mensaje reenviado",
    "mensaje original",
    "inicio del mensaje reenviado",
    "mesaj redirecționat",
    "începe mesajul redirecționat",
    "mesaj original",
    "mensagem encaminhada",
    "mensagem original",
    "messaggio inoltrato",
    "messaggio originale",
    "inizio messaggio inoltrato",
    "doorgestuurd bericht",
    "oorspronkelijk bericht",
    "videresendt melding",
    "videresendt meddelelse",
    "vidarebefordrat meddelande",
    "välitetty viesti",
    "továbbított üzenet",
    "wiadomość przekazana",
    "přeposlaná zpráva",
    "пересланное сообщение",
    "исходное сообщение",
    "переслане повідомлення",
    "הודעה שהועברה",
    "הודעה מקורית",
    "転送されたメッセージ",
    "元のメッセージ",
)

# Subject prefixes (lower case, without the colon). Forward prefixes of Outlook, Gmail,
# Thunderbird and others; reply prefixes, which make a quoted header block a reply.
FORWARD_PREFIXES = frozenset(
    "fwd fw tr wg rv enc i vs vb vl doorst pd prs trs redir továbbítás ilt İlt fwd[2] "
    "пересл перес fw пер προώθ πρθ 转发 轉寄 転送 전달 העבר השב·הע videresend vidarebefordra "
    "weiterleitung inoltro encaminhar reenviar".split()
)
REPLY_PREFIXES = frozenset(
    "re aw sv rif odp ynt atb res antw ref r otv ответ відп вiдп απ σχετ 回复 回覆 返信 답장 השב "
    "vá odg".split()
)
# A prefix that is a forward in some languages and a reply in others: Outlook's "VS:" is
# "videresend" in Danish and Norwegian, "vastaus" (reply) in Finnish. The block's labels
# tell which language wrote it.
REPLY_IN_LANGUAGES: dict[str, frozenset[str]] = {"vs": frozenset({"fi"})}
