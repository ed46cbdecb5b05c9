import '../../jupyter_vqpu/kernel/state_palette.css';
import './base.css';
