-- Argo CD resource actions of a StripeIntegration. Each action only sets one of the operator's
-- request annotations (Flux style: a new value is a new request, echoed back in status once handled).
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
local disabled = obj.status ~= nil and obj.status.disabled == true
actions["sync-now"] = {
  ["displayName"] = "Sync now",
  ["iconClass"] = "fa fa-fw fa-sync",
  -- A suspended or disabled integration sends nothing, so a sync request would only wait.
  ["disabled"] = suspended or disabled,
}
actions["reenable"] = {
  ["displayName"] = "Re-enable",
  ["iconClass"] = "fa fa-fw fa-play",
  ["disabled"] = not disabled,
}
return actions
