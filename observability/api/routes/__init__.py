"""One router per resource of source document 004: monitoring (with the activity feed),
intervention, alerts, emergency; and the inbound PagerDuty/Opsgenie webhooks."""
