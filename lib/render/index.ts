import type { Plan } from "../plan/types.js";
import { renderMarkdown } from "./markdown.js";
import { renderText } from "./text.js";

export { renderText, renderMarkdown };

/** Output formats of `flexbso plan --format`. */
export const PLAN_FORMATS = ["text", "markdown", "json"] as const;
export type PlanFormat = (typeof PLAN_FORMATS)[number];

/** The plan as JSON text (the documented, versioned Plan document), newline-terminated. */
export function renderJson(plan: Plan): string {
  return JSON.stringify(plan, null, 2) + "\n";
}

/** Renders a plan in one of {@link PLAN_FORMATS}. */
export function renderPlan(plan: Plan, format: PlanFormat): string {
  switch (format) {
    case "json":
      return renderJson(plan);
    case "markdown":
      return renderMarkdown(plan);
    case "text":
      return renderText(plan);
  }
}
