// The role prompts (prompts/*.md) filled in for an instance: who it is, whom it leads or reports to, its work.
import { Effect } from "effect"
import type * as H from "./Hierarchy.js"
import { list, type RunContext } from "./RunContext.js"

const fill = (template: string, values: Readonly<Record<string, string>>) =>
  template.replace(/\{\{(\w+)\}\}/g, (_, key: string) => values[key] ?? "")

export const makeRolePrompts = (ctx: RunContext) =>
  Effect.gen(function*() {
    const templates = new Map<string, string>()
    for (const name of ["director", "engineering-manager", "worker"]) {
      templates.set(name, yield* ctx.fs.readFileString(ctx.path.join(ctx.options.projectRoot, "prompts", `${name}.md`)).pipe(Effect.orDie))
    }
    const teamsLine = ctx.topo.teams.map((t) => `${t.em} leads ${list(t.workers)}.`).join(" ")
    const rolePrompt = (spec: H.InstanceSpec, assignment: string) => {
      switch (spec.role) {
        case "director":
          return fill(templates.get("director")!, { branch: spec.branch, reports: list(spec.reports), teams: teamsLine, direction: assignment })
        case "em":
          return fill(templates.get("engineering-manager")!, {
            name: spec.name,
            branch: spec.branch,
            reports: list(spec.reports),
            leadLine: spec.lead === undefined
              ? "There is no Director: you lead the whole project, and what you merge lands on the target branch."
              : `You report to the ${spec.lead === "director" ? "Director" : spec.lead}, who gave you the goal below.`,
            doneLine: spec.lead === undefined ? " That ends the run." : " The Director then merges your team branch.",
            goal: assignment
          })
        case "worker":
          return fill(templates.get("worker")!, { name: spec.name, branch: spec.branch, lead: spec.lead ?? "", task: assignment })
      }
    }
    return rolePrompt
  })
