package main

// Schedules name IANA time zones (spec.cleanup.timeZone); the image has no
// /usr/share/zoneinfo, so the zone database is compiled in.
import _ "time/tzdata"
