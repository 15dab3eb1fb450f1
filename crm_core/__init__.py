"""The CRM core: cards, contacts, history, activities, counters, focus.

Front doors never write here directly; workers call the use cases in
`crm_core.services`, one transaction each.
"""
