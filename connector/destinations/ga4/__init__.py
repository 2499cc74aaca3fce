"""GA4 lead events, on either upload path, with one set of rules.

events                the rules every event meets, and the event built from a delivery
measurement_protocol  `/mp/collect` with an api_secret (the default path)
datamanager           Data Manager `IngestEvents` to the property, with OAuth
"""
