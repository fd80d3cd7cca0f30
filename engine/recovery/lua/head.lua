-- RecoveryStore.head: the newest offset given (false: no history).
-- KEYS[1] meta
return head(meta(KEYS[1]))
