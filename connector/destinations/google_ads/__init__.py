"""Google Ads offline conversions, on either upload path, with one set of rules.

eligibility     whether a row may go at all (identifiers, consent, lookback, value)
errors          Google's error classes and what each means for a row
adjustments     restatements and retractions: what they adjust, and when they may go
auth            credentials for the Data Manager and Google Ads APIs
ads_api         the Google Ads API client: calls, retries, error codes
actions         conversion actions named in the mapping, looked up once per run
account         the account's settings and whether it can take the uploads
datamanager     the Data Manager upload path (IngestEvents, on destinations.datamanager)
legacy          the legacy Google Ads API upload path (allowlisted Cloud projects)

Google's later verdict on accepted Data Manager requests is `destinations.request_status`,
shared with GA4.
"""
