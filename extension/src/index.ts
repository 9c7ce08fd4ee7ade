/** JupyterLab plugin: the Continuous Training sidebar, its commands, and sandboxed report tabs. */

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, IFrame, MainAreaWidget } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { ApiClient } from './api';
import { CTPanel } from './panel';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" ' +
  'd="M12 4V1L8 5l4 4V6c3.31 0 6 2.69 6 6 0 1.01-.25 1.97-.7 2.8l1.46 1.46A7.93 7.93 0 0 0 20 12c0-4.42-3.58-8-8-8zm0 14c-3.31 0-6-2.69-6-6 0-1.01.25-1.97.7-2.8L5.24 7.74A7.93 7.93 0 0 0 4 12c0 4.42 3.58 8 8 8v3l4-4-4-4v3z"/></svg>';

export const ctIcon = new LabIcon({ name: 'ct-notebooks:icon', svgstr: ICON_SVG });

export namespace CommandIDs {
  export const open = 'ct-notebooks:open';
  export const refresh = 'ct-notebooks:refresh';
  export const openReport = 'ct-notebooks:open-report';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'ct-notebooks:plugin',
  description:
    'Continuous Training sidebar: runs, models, drift, schedule and pipeline track of a ct-notebooks project.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const settings = ServerConnection.makeSettings();
    const client = new ApiClient(settings.baseUrl, (url, init) => ServerConnection.makeRequest(url, init, settings));

    const openReport = (runId: string, relative: string, title: string) => {
      // sandbox allow-scripts only: the report runs in an opaque origin (the server's CSP says the same)
      const frame = new IFrame({ sandbox: ['allow-scripts'], referrerPolicy: 'no-referrer' });
      frame.url = client.fileUrl(runId, relative);
      frame.addClass('ct-report-frame');
      const widget = new MainAreaWidget({ content: frame });
      widget.id = `ct-report-${runId}-${relative.replace(/[^A-Za-z0-9]/g, '-')}`;
      widget.title.label = title;
      widget.title.icon = ctIcon;
      widget.title.closable = true;
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
    };

    const panel = new CTPanel(client, {
      openNotebook: path => void app.commands.execute('docmanager:open', { path }),
      openReport
    });
    panel.title.icon = ctIcon;
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'ct-notebooks-panel');
    panel.startPolling();
    void panel.refresh(true);
    if (settingRegistry) {
      const apply = (settings: ISettingRegistry.ISettings) =>
        panel.configure({
          refreshSeconds: settings.get('refreshSeconds').composite as number,
          runsPageSize: settings.get('runsPageSize').composite as number
        });
      settingRegistry
        .load(plugin.id)
        .then(settings => {
          apply(settings);
          settings.changed.connect(apply);
        })
        .catch(reason => console.warn('ct-notebooks: settings not loaded', reason));
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Continuous Training: Open Sidebar',
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Continuous Training: Refresh',
      execute: () => panel.refresh(true)
    });
    app.commands.addCommand(CommandIDs.openReport, {
      label: 'Continuous Training: Open Latest Drift Report',
      execute: async () => {
        const drift = await client.drift();
        const latest = drift.latest;
        if (latest && latest.report) {
          openReport(latest.run_id, latest.report, `Drift ${latest.batch ?? latest.run_id}`);
        }
      }
    });
    if (palette) {
      for (const command of [CommandIDs.open, CommandIDs.refresh, CommandIDs.openReport]) {
        palette.addItem({ command, category: 'Continuous Training' });
      }
    }
  }
};

export default plugin;
