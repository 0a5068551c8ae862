-- Argo CD health check for llmsvc.io/LLMService (argocd-cm: resource.customizations.health.llmsvc.io_LLMService).
-- Reads only what the operator writes: status.observedGeneration and the conditions Stalled,
-- Degraded, Progressing and Ready. Every field may be missing; nothing here can raise an error.
local hs = {status = "Progressing", message = "waiting for the operator to observe this generation"}
if obj.status == nil or obj.metadata == nil then
  return hs
end
local observed = obj.status.observedGeneration
if observed == nil or (obj.metadata.generation ~= nil and observed ~= obj.metadata.generation) then
  return hs
end
local conditions = {}
if type(obj.status.conditions) == "table" then
  for _, c in ipairs(obj.status.conditions) do
    if type(c) == "table" and c.type ~= nil then
      conditions[c.type] = c
    end
  end
end
local function describe(c)
  local text = c.reason or c.type
  if type(c.message) == "string" and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end
local function holds(name)
  return conditions[name] ~= nil and conditions[name].status == "True"
end
-- Stalled: needs a human (kstatus Failed). Degraded: includes groups unschedulable for longer
-- than the operator's grace period (a node autoscaler gets that long to add GPU nodes).
if holds("Stalled") then
  return {status = "Degraded", message = describe(conditions["Stalled"])}
end
if holds("Degraded") then
  return {status = "Degraded", message = describe(conditions["Degraded"])}
end
-- A rolling update keeps Ready=True but is not finished: Progressing until it is.
if holds("Progressing") then
  return {status = "Progressing", message = describe(conditions["Progressing"])}
end
if holds("Ready") then
  return {status = "Healthy", message = conditions["Ready"].message or ""}
end
if conditions["Ready"] ~= nil then
  hs.message = describe(conditions["Ready"])
end
return hs
