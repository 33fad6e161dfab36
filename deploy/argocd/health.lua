-- Argo CD health of an m3stripe.dev/StripeIntegration
-- (argocd-cm: resource.customizations.health.m3stripe.dev_StripeIntegration).
--
-- Argo CD runs custom health checks in gopher-lua (Lua 5.1) with only the base and table libraries:
-- no string or math library, so no string.format or string methods here. The object is the global
-- `obj`; the script returns a table with `status` and `message`.
--
-- The operator writes kstatus-style conditions: Ready (summary), Stalled (only while True: needs a
-- person), plus Connected / SourceConnected whose status is Unknown while a failure is one the
-- operator retries by itself.

local hs = {}

-- Ready=False reasons the operator recovers from on its own (network, 429, 5xx, a passing API error):
-- Progressing, not Degraded, so a Stripe blip does not page anyone through Argo CD.
local transient = {
  StripeUnreachable = true,
  StripeUnavailable = true,
  StripeRateLimited = true,
  M3terUnreachable = true,
  SecretUnreadable = true,
  M3terSecretUnreadable = true,
}

local function find_condition(conditions, condition_type)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if type(condition) == "table" and condition.type == condition_type then
      return condition
    end
  end
  return nil
end

local function describe(condition)
  local reason = condition.reason or "Unknown"
  if condition.message ~= nil and condition.message ~= "" then
    return reason .. ": " .. tostring(condition.message)
  end
  return reason
end

-- The operator marks a retried failure Unknown on the dependency condition that failed; any new
-- transient reason is then recognised without being listed above.
local function retried_by_operator(conditions, reason)
  for _, condition_type in ipairs({ "Connected", "SourceConnected" }) do
    local condition = find_condition(conditions, condition_type)
    if condition ~= nil and condition.status == "Unknown" and condition.reason == reason then
      return true
    end
  end
  return false
end

local function assess(o)
  local metadata = o.metadata or {}
  local spec = o.spec or {}
  local status = o.status

  if metadata.deletionTimestamp ~= nil then
    return "Progressing", "Being deleted: waiting for the operator to stop the integration"
  end
  if type(status) ~= "table" then
    return "Progressing", "Waiting for the operator to report status"
  end

  local generation = tonumber(metadata.generation)
  local observed = tonumber(status.observedGeneration)
  if generation ~= nil and (observed == nil or observed < generation) then
    return "Progressing", "Waiting for the operator to observe the latest spec (generation " ..
      tostring(metadata.generation) .. ")"
  end

  local conditions = status.conditions
  local stalled = find_condition(conditions, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    return "Degraded", describe(stalled)
  end
  if status.disabled == true then
    return "Degraded", "Disabled after successive errors; annotate with m3stripe.dev/reenable=<new value> to re-enable"
  end
  if spec.suspend == true then
    return "Suspended", "spec.suspend is true: no Bills are sent"
  end

  local ready = find_condition(conditions, "Ready")
  if ready == nil then
    return "Progressing", "Waiting for the Ready condition"
  end
  local ready_generation = tonumber(ready.observedGeneration)
  if generation ~= nil and ready_generation ~= nil and ready_generation < generation then
    return "Progressing", "Waiting for the Ready condition of the latest spec"
  end

  if ready.status == "True" then
    if status.connected == false then
      return "Degraded", "Ready, but not connected to Stripe"
    end
    local message = ready.message or "Ready"
    local synced = find_condition(conditions, "Synced")
    -- A failed run is retried, and the operator disables the integration (Stalled) if failures persist.
    if synced ~= nil and synced.status == "False" then
      message = message .. "; last sync: " .. describe(synced)
    end
    return "Healthy", message
  end
  if ready.status == "False" then
    if ready.reason == "Suspended" then
      return "Suspended", describe(ready)
    end
    if transient[ready.reason] or retried_by_operator(conditions, ready.reason) then
      return "Progressing", describe(ready)
    end
    -- Everything else (bad key, key mode mismatch, missing Secret or key, no credential, invalid
    -- spec, m3ter auth) needs a person to act.
    return "Degraded", describe(ready)
  end
  return "Progressing", describe(ready)
end

hs.status, hs.message = assess(obj)
return hs
