-- Argo CD health check for sessionstore.dev/SessionStore.
-- It reads status as kstatus (Flux, kubectl wait) does, so both kinds of
-- GitOps tool agree: a spec not yet observed, or a reconcile being retried,
-- is Progressing; Stalled (a spec or Secret only a person can fix) is
-- Degraded; Ready is Healthy; a store not yet Ready (unreachable, or waiting
-- for its Secret) is Progressing, since the operator keeps probing it and it
-- may recover by itself.
local hs = { status = "Progressing", message = "Waiting for the operator to report status" }
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation or 0
local observed = obj.status.observedGeneration or 0
if observed < generation then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local ready = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Stalled" and c.status == "True" then
      hs.status = "Degraded"
      hs.message = c.reason .. ": " .. (c.message or "")
      return hs
    end
    if c.type == "Reconciling" and c.status == "True" then
      hs.message = c.reason .. ": " .. (c.message or "")
      return hs
    end
    if c.type == "Ready" then
      ready = c
    end
  end
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
hs.message = ready.reason .. ": " .. (ready.message or "")
return hs
