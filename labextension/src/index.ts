/**
 * jupyter-vqpu JupyterLab extension: a "vQPU" panel in the left sidebar with
 * the devices (status, queue depth, calibration snapshot and its age) and the
 * user's tasks, updated live from the server extension's event stream.
 */
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';

import vqpuSvg from '../style/icons/vqpu.svg';
import { VqpuPanel } from './panel';

export { VqpuPanel } from './panel';
export * from './api';
export * from './states';

const PLUGIN_ID = 'jupyter-vqpu:panel';

export const vqpuIcon = new LabIcon({
  name: 'jupyter-vqpu:chip',
  svgstr: vqpuSvg
});

const CommandIDs = {
  open: 'vqpu:open-panel',
  refresh: 'vqpu:refresh'
} as const;

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'A panel with vQPU devices and my tasks, live.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
    const panel = new VqpuPanel({
      settings: ServerConnection.makeSettings()
    });
    panel.title.icon = vqpuIcon;
    panel.title.caption = 'vQPU';
    app.shell.add(panel, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(panel, 'jupyter-vqpu-panel');
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Show vQPU Panel',
      caption: 'Show the vQPU devices and tasks panel',
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh vQPU Panel',
      execute: () => panel.refreshAll()
    });
  }
};

export default plugin;
