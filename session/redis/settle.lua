-- settle.lua: the sweeper's look at a room's ledger that due.lua found
-- due. ARGV[3]: the gen of the ledger's room. If that incarnation of the
-- room lives, the members whose grace is over are removed (prune gives
-- their mailboxes back) and the ledger is scored by its next due time
-- (sync_ledger); otherwise (the room expired, was evicted, or has a new
-- incarnation) the whole ledger is given back. One script, so that
-- instances sweeping at once can never give anything back twice: the
-- second finds the ledger gone, or no longer due. Not activity. Returns
-- {"OK"}.
local r = lookup()
if r and r.gen == ARGV[3] then
  prune(r)
  sync_ledger(r)
  return {'OK'}
end
release(ARGV[3], nil)
return {'OK'}
