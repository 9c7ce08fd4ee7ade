/** A panel context for section tests: a given API client, no-op actions, expanded runs recorded. */
import type { ApiClient } from '../src/api';
import type { IPanelContext } from '../src/sections/section';

export function panelContext(client: Partial<ApiClient> = {}): IPanelContext & { expanded: string[] } {
  const expanded: string[] = [];
  return {
    client: client as ApiClient,
    actions: { openNotebook: () => undefined, openReport: () => undefined },
    act: async action => {
      await action();
    },
    confirm: async () => true,
    showError: () => undefined,
    refreshRuns: () => undefined,
    expandRun: runId => expanded.push(runId),
    expanded
  };
}
