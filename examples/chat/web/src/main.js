import { createApp } from 'vue'
import App from './App.vue'
import { fetchMode } from './chat.js'
import './style.css'

// The server says first whether it runs in login mode (tokens, private rooms).
fetchMode().then(({ login }) => createApp(App, { login }).mount('#app'))
